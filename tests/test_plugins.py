"""The plugin API: hook order, every exit path, isolation of failures, the trace, batches, loading.

Unit tests drive ``Dispatcher`` and ``load_plugins`` with plain ``Plugin`` subclasses and a ``Run``
in a tmp dir. End-to-end tests run the real ``guildlite`` CLI in a subprocess on a tiny project
(see ``_plugin_helpers``): the recording plugin appends one JSON line per hook call, so a test
counts and orders calls; the job script leaves marker files, so a test knows whether a job was
ever launched. Most lifecycle tests use the op ``quick`` (launcher python: a real process, no
torch import); order, rank count, a failing exit and the signal tests use real ``torchrun`` jobs.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from _plugin_helpers import BUILTINS, HOOKS, PluginProject, guildfile_text, hook_sequence, make_plugin_project
from conftest import TRACEBACK, wait_until

from guildlite import Plugin, StopRun, hook
from guildlite._guildfile import PluginSpec
from guildlite._plugin_loader import load_plugins
from guildlite._plugins import Dispatcher, HookFailed, hook_priority
from guildlite._run import Run

TRACE_KEYS = {"plugin", "hook", "priority", "start", "seconds", "error"}


@pytest.fixture
def pproj(tmp_path: Path) -> Iterator[Callable[..., PluginProject]]:
    """A factory of plugin projects under tmp_path; their processes are killed at teardown."""
    made: list[PluginProject] = []

    def make(guildfile: str | None = None, name: str = "project") -> PluginProject:
        proj = make_plugin_project(tmp_path, guildfile, name)
        made.append(proj)
        return proj

    yield make
    for proj in made:
        proj.cleanup()


def rec(tag: str, cls: str = "Rec", priority: int | None = None, **args: Any) -> dict[str, Any]:
    """A guildfile plugin entry for the recording plugin."""
    entry: dict[str, Any] = {"class": f"recplug:{cls}", "args": {"tag": tag, **args}}
    if priority is not None:
        entry["priority"] = priority
    return entry


def counts(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    """How many times each (run, plugin, hook) was called."""
    out: dict[tuple[str, str, str], int] = {}
    for e in events:
        key = (e["run"], e["plugin"], e["hook"])
        out[key] = out.get(key, 0) + 1
    return out


# =================================================================================================
# Unit level: Dispatcher and load_plugins
# =================================================================================================


class Recorder(Plugin):
    """Appends (name, hook) to a shared list in every hook."""

    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self._name, self.calls = name, calls

    @property
    def name(self) -> str:
        return self._name

    def on_run_staged(self, run: Run) -> None:
        self.calls.append((self.name, "on_run_staged"))

    def on_run_begin(self, run: Run) -> None:
        self.calls.append((self.name, "on_run_begin"))

    def on_run_end(self, run: Run) -> None:
        self.calls.append((self.name, "on_run_end"))


class Class50(Recorder):
    priority = 50


class Class50LateEnd(Recorder):
    priority = 50

    @hook(priority=150)
    def on_run_end(self, run: Run) -> None:
        self.calls.append((self.name, "on_run_end"))


class EarlyBegin(Recorder):
    @hook(priority=5)
    def on_run_begin(self, run: Run) -> None:
        self.calls.append((self.name, "on_run_begin"))


class EndOnly(Plugin):
    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls

    def on_run_end(self, run: Run) -> None:
        self.calls.append((self.name, "on_run_end"))


class Failing(Recorder):
    """Raises (or vetoes) in the hooks it is told to."""

    def __init__(self, name: str, calls: list[tuple[str, str]], fail: tuple[str, ...] = (),
                 veto: tuple[str, ...] = ()) -> None:
        super().__init__(name, calls)
        self.fail, self.veto = fail, veto

    def _maybe(self, hook_name: str) -> None:
        self.calls.append((self.name, hook_name))
        if hook_name in self.veto:
            raise StopRun(f"{self.name} says no")
        if hook_name in self.fail:
            raise ValueError(f"{self.name} broke")

    def on_run_staged(self, run: Run) -> None:
        self._maybe("on_run_staged")

    def on_run_begin(self, run: Run) -> None:
        self._maybe("on_run_begin")

    def on_run_end(self, run: Run) -> None:
        self._maybe("on_run_end")


@pytest.fixture
def unit_run(tmp_path: Path) -> Run:
    d = tmp_path / "run"
    d.mkdir()
    return Run(id="unit-run", run_dir=d, op="train")


def test_order_mixes_class_and_method_priorities_with_declaration_ties(unit_run: Run) -> None:
    calls: list[tuple[str, str]] = []
    plugins = [
        Recorder("plain-a", calls),            # 100 everywhere, declared first
        Class50LateEnd("c50-late-end", calls),  # 50, but on_run_end 150
        EarlyBegin("early-begin", calls),       # 100, but on_run_begin 5
        Class50("c50", calls),                  # 50 everywhere: ties with c50-late-end
        EndOnly(calls),                         # on_run_end only, 100
        Recorder("plain-b", calls),            # 100 everywhere, declared last
    ]
    expected = {
        "on_run_staged": ["c50-late-end", "c50", "plain-a", "early-begin", "plain-b"],
        "on_run_begin": ["early-begin", "c50-late-end", "c50", "plain-a", "plain-b"],
        "on_run_end": ["c50", "plain-a", "early-begin", "EndOnly", "plain-b", "c50-late-end"],
    }
    d = Dispatcher(plugins, log=lambda msg: None)
    for hook_name in HOOKS:
        assert [p.name for p in d.ordered(hook_name)] == expected[hook_name]
        calls.clear()
        d.call(hook_name, unit_run)
        assert calls == [(n, hook_name) for n in expected[hook_name]]
    # The trace: one entry per call, in call order, with the effective priority.
    trace = unit_run.plugins
    assert all(set(t) == TRACE_KEYS for t in trace)
    for hook_name in HOOKS:
        assert hook_sequence(trace, hook_name) == expected[hook_name]
    prio = {(t["plugin"], t["hook"]): t["priority"] for t in trace}
    assert prio[("c50-late-end", "on_run_staged")] == 50
    assert prio[("c50-late-end", "on_run_end")] == 150
    assert prio[("early-begin", "on_run_begin")] == 5
    assert prio[("early-begin", "on_run_end")] == 100
    assert prio[("EndOnly", "on_run_end")] == 100
    # A plugin that does not override a hook is neither called nor traced for it.
    assert ("EndOnly", "on_run_staged") not in prio and ("EndOnly", "on_run_begin") not in prio
    assert all(t["error"] is None and t["seconds"] >= 0 and isinstance(t["start"], float) for t in trace)


def test_the_order_is_the_same_whatever_the_order_of_calls(unit_run: Run) -> None:
    """Ordering is a pure function of priorities and declaration order (stable sort, no state)."""
    calls: list[tuple[str, str]] = []
    plugins = [Class50(f"p{i}", calls) if i % 2 else Recorder(f"p{i}", calls) for i in range(8)]
    d = Dispatcher(plugins, log=lambda msg: None)
    first = [p.name for p in d.ordered("on_run_end")]
    assert first == ["p1", "p3", "p5", "p7", "p0", "p2", "p4", "p6"]
    for _ in range(3):
        d.call("on_run_end", unit_run)
        assert [p.name for p in d.ordered("on_run_end")] == first


PRIO_MODULE = """\
from guildlite import Plugin, hook

CALLS = []

class Base(Plugin):
    def __init__(self, tag):
        self.tag = tag
    @property
    def name(self):
        return self.tag
    def on_run_staged(self, run):
        CALLS.append((self.tag, "on_run_staged"))
    def on_run_begin(self, run):
        CALLS.append((self.tag, "on_run_begin"))
    def on_run_end(self, run):
        CALLS.append((self.tag, "on_run_end"))

class Mixed(Base):
    priority = 40
    @hook(priority=1)
    def on_run_begin(self, run):
        CALLS.append((self.tag, "on_run_begin"))
    @hook(priority=300)
    def on_run_end(self, run):
        CALLS.append((self.tag, "on_run_end"))
"""


def test_guildfile_priority_overrides_class_and_method_priorities(
    tmp_path: Path, unit_run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_plugins puts the project dir first
    mod = f"prio_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(PRIO_MODULE)
    specs = [
        PluginSpec(where="guildfile.yml:2 plugins[0]", cls=f"{mod}:Mixed", args={"tag": "mixed-own"}),
        PluginSpec(where="guildfile.yml:3 plugins[1]", cls=f"{mod}:Mixed", args={"tag": "mixed-120"}, priority=120),
        PluginSpec(where="guildfile.yml:4 plugins[2]", cls=f"{mod}.Base", args={"tag": "base-0"}, priority=0),
        PluginSpec(where="guildfile.yml:5 plugins[3]", cls=f"{mod}:Base", args={"tag": "base-own"}),
    ]
    plugins = load_plugins(specs, tmp_path)
    assert [type(p).__name__ for p in plugins] == ["Mixed", "Mixed", "Base", "Base"]
    own, overridden, zero, base = plugins
    # The entry's priority wins over the class's and over @hook, for every hook.
    assert [hook_priority(own, h) for h in HOOKS] == [40, 1, 300]
    assert [hook_priority(overridden, h) for h in HOOKS] == [120, 120, 120]
    assert [hook_priority(zero, h) for h in HOOKS] == [0, 0, 0]
    assert [hook_priority(base, h) for h in HOOKS] == [100, 100, 100]
    d = Dispatcher(plugins, log=lambda msg: None)
    calls = sys.modules[mod].CALLS
    for hook_name in HOOKS:
        d.call(hook_name, unit_run)
    assert calls == [
        ("base-0", "on_run_staged"), ("mixed-own", "on_run_staged"), ("base-own", "on_run_staged"),
        ("mixed-120", "on_run_staged"),
        ("base-0", "on_run_begin"), ("mixed-own", "on_run_begin"), ("base-own", "on_run_begin"),
        ("mixed-120", "on_run_begin"),
        ("base-0", "on_run_end"), ("base-own", "on_run_end"), ("mixed-120", "on_run_end"),
        ("mixed-own", "on_run_end"),
    ]
    assert {(t["plugin"], t["hook"]): t["priority"] for t in unit_run.plugins}[("mixed-120", "on_run_begin")] == 120


@pytest.mark.parametrize("hook_name", ["on_run_staged", "on_run_begin"])
@pytest.mark.parametrize("veto", [False, True], ids=["raise", "veto"])
def test_failure_in_staged_or_begin_stops_the_chain(unit_run: Run, hook_name: str, veto: bool) -> None:
    calls: list[tuple[str, str]] = []
    logged: list[str] = []
    kw = {"veto": (hook_name,)} if veto else {"fail": (hook_name,)}
    plugins = [Recorder("first", calls), Failing("bad", calls, **kw), Recorder("after", calls)]
    d = Dispatcher(plugins, log=logged.append)
    with pytest.raises(HookFailed) as info:
        d.call(hook_name, unit_run)
    message = "bad says no" if veto else "ValueError: bad broke"
    assert info.value.info == {"plugin": "bad", "hook": hook_name, "message": message, "veto": veto}
    assert calls == [("first", hook_name), ("bad", hook_name)]  # "after" was skipped
    assert [(t["plugin"], t["error"]) for t in unit_run.plugins] == [("first", None), ("bad", message)]
    assert len(logged) == 1 and "bad" in logged[0] and ("vetoed" in logged[0]) == veto
    log = unit_run.paths.output_log
    if veto:  # a veto is a decision, not a crash: no traceback
        assert not log.exists() or TRACEBACK not in log.read_text()
    else:
        text = log.read_text()
        assert TRACEBACK in text and "ValueError: bad broke" in text and f"bad.{hook_name}" in text


def test_failures_in_on_run_end_are_isolated(unit_run: Run) -> None:
    calls: list[tuple[str, str]] = []
    logged: list[str] = []
    plugins = [
        Failing("fails-first", calls, fail=("on_run_end",)),
        Recorder("ok", calls),
        Failing("vetoes-late", calls, veto=("on_run_end",)),
        Recorder("ok-last", calls),
    ]
    Dispatcher(plugins, log=logged.append).call("on_run_end", unit_run)  # never raises
    assert [c[0] for c in calls] == ["fails-first", "ok", "vetoes-late", "ok-last"]
    assert [(t["plugin"], t["error"]) for t in unit_run.plugins] == [
        ("fails-first", "ValueError: fails-first broke"), ("ok", None), ("vetoes-late", "vetoes-late says no"),
        ("ok-last", None),
    ]
    assert len(logged) == 2
    assert "ValueError: fails-first broke" in unit_run.paths.output_log.read_text()


# =================================================================================================
# End to end: the real CLI, real jobs
# =================================================================================================


def test_order_trace_and_once_per_run_not_per_rank_end_to_end(
    pproj: Callable[..., PluginProject], tmp_path: Path
) -> None:
    """Global, op and --plugin (entry point) plugins with class, @hook and guildfile priorities,
    around a 2-rank torchrun job: the order rule, the trace, and one call per hook per run."""
    site = tmp_path / "site"  # a real installed distribution publishing an entry-point plugin
    (site / "plugtest_ep-0.1.dist-info").mkdir(parents=True)
    (site / "plugtest_ep-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plugtest-ep\nVersion: 0.1\n")
    (site / "plugtest_ep-0.1.dist-info" / "entry_points.txt").write_text(
        "[guildlite.plugins]\nplugtest-ep = plugtest_ep:EP\n")
    (site / "plugtest_ep.py").write_text(
        "import json, os\nfrom guildlite import Plugin\n\n"
        "class EP(Plugin):\n"
        "    def _ev(self, hook_name, run):\n"
        "        with open(os.environ['PLUGTEST_EVENTS'], 'a') as f:\n"
        "            f.write(json.dumps({'plugin': 'EP', 'hook': hook_name, 'run': run.id, 'pid': os.getpid()}) + '\\n')\n"
        "    def on_run_staged(self, run): self._ev('on_run_staged', run)\n"
        "    def on_run_begin(self, run): self._ev('on_run_begin', run)\n"
        "    def on_run_end(self, run): self._ev('on_run_end', run)\n"
    )
    gf = guildfile_text(
        global_plugins=[rec("g1", cls="Early"), rec("g2")],
        op_plugins={"torch2": [rec("o1", priority=5), rec("o2", cls="Late", priority=100), rec("o3", priority=10)]},
    )
    proj = pproj(gf)
    cp = proj.run("run", "torch2", "--plugin", "plugtest-ep", "-y", env={"PYTHONPATH": str(site)})
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    r = proj.only_record()
    assert r["status"] == "completed" and r["exit_code"] == 0

    expected = {
        "on_run_staged": ["o1", "SourceSnapshot", "o3", "g1", "g2", "o2", "EP"],
        "on_run_begin": ["o1", "EnvCapture", "o3", "g1", "g2", "o2", "EP"],
        "on_run_end": ["o1", "OutputScalars", "o3", "g2", "o2", "EP", "g1"],
    }
    # The trace in run.json: every call, in call order, with the effective priority.
    trace = r["plugins"]
    assert all(set(t) == TRACE_KEYS for t in trace), trace
    assert [t["hook"] for t in trace] == [h for h in HOOKS for _ in expected[h]]
    for h in HOOKS:
        assert hook_sequence(trace, h) == expected[h]
    prio = {(t["plugin"], t["hook"]): t["priority"] for t in trace}
    assert prio[("o2", "on_run_staged")] == 100  # the entry's priority beat @hook(priority=1)
    assert prio[("g1", "on_run_staged")] == 50 and prio[("g1", "on_run_end")] == 200
    assert prio[("o1", "on_run_end")] == 5 and prio[("o3", "on_run_begin")] == 10
    assert prio[("EP", "on_run_begin")] == 100
    assert all(prio[(b, h)] == 10 for b, h in zip(BUILTINS, HOOKS))
    assert all(t["error"] is None and isinstance(t["start"], float) and t["seconds"] >= 0 for t in trace)

    # What the plugins saw, in the order they ran (the built-ins do not record events).
    events = proj.events()
    user = {h: [n for n in expected[h] if n not in BUILTINS] for h in HOOKS}
    assert [(e["plugin"], e["hook"]) for e in events] == [(n, h) for h in HOOKS for n in user[h]]
    # Once per run, never once per rank: two ranks ran, each hook fired once per plugin, all in
    # the guildlite process (the record's owner), none in a rank.
    assert len(proj.started(r["id"])) == 2 and len(proj.finished(r["id"])) == 2
    assert set(counts(events).values()) == {1}
    assert {e["pid"] for e in events} == {r["pid"]}
    rank_pids = {int(p.read_text()) for p in proj.started(r["id"])}
    assert r["pid"] not in rank_pids
    imports = proj.imports_path.read_text().split()
    assert imports == ["recplug", str(r["pid"])]  # the plugin module was imported once, by guildlite

    # When each hook fired.
    staged = [e for e in events if e["hook"] == "on_run_staged"]
    begin = [e for e in events if e["hook"] == "on_run_begin"]
    end = [e for e in events if e["hook"] == "on_run_end"]
    for e in staged:  # the run dir is in place (published, run.json written, source copied)
        if e["plugin"] == "EP":
            continue
        assert e["status"] == "staged" and e["disk_status"] == "staged"
        assert e["published"] and e["script_staged"] and not e["job_started"]
    for e in begin:
        if e["plugin"] == "EP":
            continue
        assert e["status"] == "pending" and e["disk_status"] == "pending" and not e["job_started"]
    for e in end:
        if e["plugin"] == "EP":
            continue
        assert e["status"] == "completed" and e["exit_code"] == 0 and e["job_started"]

    # `guildlite runs info` shows the trace.
    info = proj.run("runs", "info", r["id"])
    assert info.returncode == 0, info.stderr
    hook_lines = [line.split() for line in info.stdout.splitlines() if line.strip().startswith("on_run_")]
    assert [(f[0], f[1]) for f in hook_lines] == [(h, n) for h in HOOKS for n in expected[h]]


# --- every exit path fires on_run_end exactly once ----------------------------------------------

THREE = [rec("a", priority=50), rec("b"), rec("c", priority=150)]


@pytest.mark.parametrize(
    "op,code,status",
    [("quick", 0, "completed"), ("quick", 3, "error"), ("torch", 7, "error")],
    ids=["success", "nonzero-exit", "nonzero-exit-torchrun"],
)
def test_end_fires_once_after_the_job_exits(
    pproj: Callable[..., PluginProject], op: str, code: int, status: str
) -> None:
    proj = pproj(guildfile_text(global_plugins=THREE))
    cp = proj.run("run", op, f"code={code}", "-y")
    assert cp.returncode == code, (cp.stdout, cp.stderr)
    r = proj.only_record()
    assert r["status"] == status and r["exit_code"] == code
    assert len(proj.started(r["id"])) == 1 and len(proj.finished(r["id"])) == 1
    c = counts(proj.events())
    assert c == {(r["id"], p, h): 1 for p in "abc" for h in HOOKS}
    for e in proj.events("on_run_end"):
        assert e["status"] == status and e["exit_code"] == code and e["job_started"]
    assert hook_sequence(r["plugins"], "on_run_end") == ["OutputScalars", "a", "b", "c"]
    if code:
        assert r["error"]["message"] == f"the job exited with code {code}"


@pytest.mark.parametrize("hook_name", ["on_run_staged", "on_run_begin"])
@pytest.mark.parametrize("mode", ["veto", "fail"])
def test_veto_or_exception_before_launch(pproj: Callable[..., PluginProject], hook_name: str, mode: str) -> None:
    """The run stops (status error, never launched); later hooks of that phase are skipped;
    every plugin's on_run_end still runs, exactly once."""
    plugins = [rec("a", priority=50), rec("b", **{mode: [hook_name]}), rec("c", priority=150)]
    proj = pproj(guildfile_text(global_plugins=plugins))
    cp = proj.run("run", "quick", "-y")
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    r = proj.only_record()
    message = f"b vetoes in {hook_name}" if mode == "veto" else f"RuntimeError: b fails in {hook_name}"
    assert r["status"] == "error" and r["exit_code"] is None
    assert {k: r["error"][k] for k in ("plugin", "hook", "message")} == {
        "plugin": "b", "hook": hook_name, "message": message}
    assert r["error"].get("veto") is (mode == "veto")
    # Never launched: the job would have left a marker, and printed into output.log.
    assert proj.started() == []
    assert r["started"] is None and r["job_pid"] is None
    log = proj.runs_dir / r["id"] / "output.log"
    assert not log.exists() or "job rank=" not in log.read_text()
    # Hooks: the phase stops at b; no begin at all after a staged failure; every end, once.
    called = [(e["plugin"], e["hook"]) for e in proj.events()]
    if hook_name == "on_run_staged":
        before_end = [("a", "on_run_staged"), ("b", "on_run_staged")]
    else:
        before_end = [(p, "on_run_staged") for p in "abc"] + [("a", "on_run_begin"), ("b", "on_run_begin")]
    assert called == before_end + [(p, "on_run_end") for p in "abc"]
    for e in proj.events("on_run_end"):
        assert e["status"] == "error" and e["exit_code"] is None and e["error"]["plugin"] == "b"
    # The trace holds the failing call with its error, and every on_run_end.
    failing = [t for t in r["plugins"] if t["error"]]
    assert [(t["plugin"], t["hook"], t["error"]) for t in failing] == [("b", hook_name, message)]
    assert hook_sequence(r["plugins"], "on_run_end") == ["OutputScalars", "a", "b", "c"]
    if hook_name == "on_run_staged":
        assert hook_sequence(r["plugins"], "on_run_begin") == []
    # Reporting: the summary names plugin and hook; a crash leaves its traceback in output.log.
    assert f"in b.{hook_name}" in cp.stderr and TRACEBACK not in cp.stderr
    if mode == "fail":
        text = log.read_text()
        assert TRACEBACK in text and message in text
    else:
        assert "vetoed" in cp.stderr


def test_exception_in_on_run_end_changes_nothing_else(pproj: Callable[..., PluginProject]) -> None:
    plugins = [
        rec("a", priority=50, fail=["on_run_end"]),
        rec("b"),
        rec("c", priority=150, fail=["on_run_end"]),
        {"class": "recplug:EndOnly"},
    ]
    proj = pproj(guildfile_text(global_plugins=plugins))
    cp = proj.run("run", "quick", "-y")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    r = proj.only_record()
    assert r["status"] == "completed" and r["exit_code"] == 0 and r["error"] is None
    assert [e["plugin"] for e in proj.events("on_run_end")] == ["a", "b", "EndOnly", "c"]
    end = [(t["plugin"], t["error"]) for t in r["plugins"] if t["hook"] == "on_run_end"]
    assert end == [
        ("OutputScalars", None), ("a", "RuntimeError: a fails in on_run_end"), ("b", None), ("EndOnly", None),
        ("c", "RuntimeError: c fails in on_run_end"),
    ]
    # A plugin that only implements on_run_end is traced only there.
    assert [t["hook"] for t in r["plugins"] if t["plugin"] == "EndOnly"] == ["on_run_end"]
    assert "a.on_run_end failed" in cp.stderr and "c.on_run_end failed" in cp.stderr
    assert "RuntimeError: a fails in on_run_end" in (proj.runs_dir / r["id"] / "output.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_guildlite_while_the_job_runs(pproj: Callable[..., PluginProject], sig: int) -> None:
    proj = pproj(guildfile_text(global_plugins=[rec("a"), rec("b", priority=150)]))
    p = proj.spawn("run", "torch", "sleep=120", "-y")
    wait_until(lambda: proj.started() or p.poll() is not None, timeout=90, what="the job to start")
    assert p.poll() is None, p.communicate()
    p.send_signal(sig)
    out, err = p.communicate(timeout=90)
    assert p.returncode != 0, (out, err)
    r = proj.only_record()
    assert r["status"] == "terminated", r
    assert proj.finished() == []  # the job was stopped mid-sleep
    c = counts(proj.events())
    assert c == {(r["id"], p_, h): 1 for p_ in "ab" for h in HOOKS}
    for e in proj.events("on_run_end"):
        assert e["status"] == "terminated" and e["exit_code"] is not None
    assert hook_sequence(r["plugins"], "on_run_end") == ["OutputScalars", "a", "b"]
    wait_until(lambda: not proj.procs(), timeout=30, what="the job's processes to go")


def test_sigterm_during_a_batch_ends_every_trial_once(pproj: Callable[..., PluginProject]) -> None:
    """The running trial is terminated; the trial staged but never started gets its on_run_end
    (and no on_run_begin); the batch gets begin and end once each."""
    proj = pproj(guildfile_text(global_plugins=[rec("a")]))
    p = proj.spawn("run", "quick", "sleep=[60,0]", "-y")
    wait_until(lambda: proj.started() or p.poll() is not None, timeout=60, what="the first trial to start")
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0, (out, err)
    recs = proj.records()
    (batch,) = [r for r in recs if r["is_batch"]]
    trials = [proj.record(t) for t in batch["trials"]]
    assert len(trials) == 2 and batch["status"] == "terminated"
    assert [t["status"] for t in trials] == ["terminated", "terminated"]
    assert trials[1]["started"] is None and proj.started(trials[1]["id"]) == []
    c = counts(proj.events())
    assert c == {
        (batch["id"], "a", "on_run_begin"): 1, (batch["id"], "a", "on_run_end"): 1,
        **{(trials[0]["id"], "a", h): 1 for h in HOOKS},
        (trials[1]["id"], "a", "on_run_staged"): 1, (trials[1]["id"], "a", "on_run_end"): 1,
    }
    (batch_end,) = [e for e in proj.events("on_run_end") if e["is_batch"]]
    assert batch_end["status"] == "terminated"
    assert batch_end["trials"] == [[t["id"], "terminated"] for t in trials]
    assert proj.events()[-1] == batch_end  # the batch ends after its trials
    wait_until(lambda: not proj.procs(), timeout=30, what="the job's processes to go")


# --- on_run_staged may edit the staged copy -----------------------------------------------------


def test_staged_edit_is_what_the_job_runs(pproj: Callable[..., PluginProject]) -> None:
    proj = pproj(guildfile_text(op_plugins={"quick": [{"class": "recplug:EditTag", "args": {"tag": "patched"}}]}))
    original = (proj.root / "job.py").read_bytes()
    cp = proj.run("run", "quick", "-y")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    r = proj.only_record()
    run_dir = proj.runs_dir / r["id"]
    assert "tag=patched" in (run_dir / "output.log").read_text()
    assert 'TAG = "patched"' in (run_dir / "job.py").read_text()
    assert (proj.root / "job.py").read_bytes() == original  # the project is untouched
    # The built-in snapshot (priority 10) recorded the source as copied, before the edit.
    manifest = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())
    (job,) = [f for f in manifest["files"] if f["path"] == "job.py"]
    assert job["sha256"] == hashlib.sha256(original).hexdigest()


# --- batches ------------------------------------------------------------------------------------


def test_batch_gets_begin_and_end_and_trials_get_all_three(pproj: Callable[..., PluginProject]) -> None:
    entry = {"class": "recplug.Rec", "args": {"tag": "a"}}  # the dotted form of an import path
    proj = pproj(guildfile_text(global_plugins=[entry]))
    cp = proj.run("run", "quick", "x=[1,2]", "-y")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    recs = proj.records()
    (batch,) = [r for r in recs if r["is_batch"]]
    assert batch["status"] == "completed" and len(recs) == 3
    trial_ids = batch["trials"]
    assert len(trial_ids) == 2
    events = proj.events()
    c = counts(events)
    assert c == {
        (batch["id"], "a", "on_run_begin"): 1, (batch["id"], "a", "on_run_end"): 1,
        **{(t, "a", h): 1 for t in trial_ids for h in HOOKS},
    }
    assert events[0]["run"] == batch["id"] and events[0]["hook"] == "on_run_begin"
    assert events[-1]["run"] == batch["id"] and events[-1]["hook"] == "on_run_end"
    assert events[0]["is_batch"] and events[0]["status"] == "pending" and events[0]["parent"] is None
    # At the batch's end, run.trials lists its trials in launch order, each completed.
    assert events[-1]["status"] == "completed"
    assert events[-1]["trials"] == [[t, "completed"] for t in trial_ids]
    for e in events[1:-1]:
        assert e["is_trial"] and not e["is_batch"]
        assert e["parent"] == batch["id"] and e["parent_is_batch"] is True
    assert [float(e["flags"]["x"]) for e in events if e["hook"] == "on_run_staged"] == [1.0, 2.0]
    # The traces agree: no on_run_staged for the batch, all three for each trial.
    assert [t["hook"] for t in batch["plugins"] if t["plugin"] == "a"] == ["on_run_begin", "on_run_end"]
    for t in trial_ids:
        tr = proj.record(t)
        assert tr["parent"] == batch["id"] and tr["is_trial"]
        assert [x["hook"] for x in tr["plugins"] if x["plugin"] == "a"] == list(HOOKS)
    # One import of the plugin module for the whole batch, in the guildlite process.
    assert proj.imports_path.read_text().split() == ["recplug", str(batch["pid"])]


def test_batch_veto_starts_no_trial(pproj: Callable[..., PluginProject]) -> None:
    proj = pproj(guildfile_text(global_plugins=[rec("a", veto=["on_run_begin"], when={"is_batch": True})]))
    cp = proj.run("run", "quick", "x=[1,2]", "-y")
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    (batch,) = proj.records()
    assert batch["is_batch"] and batch["status"] == "error" and batch["trials"] == []
    assert batch["error"]["plugin"] == "a" and batch["error"]["hook"] == "on_run_begin"
    assert proj.started() == []
    assert counts(proj.events()) == {(batch["id"], "a", "on_run_begin"): 1, (batch["id"], "a", "on_run_end"): 1}


def test_trial_veto_ends_that_trial_only(pproj: Callable[..., PluginProject]) -> None:
    proj = pproj(guildfile_text(global_plugins=[rec("a", veto=["on_run_begin"], when={"x": 2.0})]))
    cp = proj.run("run", "quick", "x=[1,2]", "-y")
    assert cp.returncode != 0, (cp.stdout, cp.stderr)
    (batch,) = [r for r in proj.records() if r["is_batch"]]
    t1, t2 = (proj.record(t) for t in batch["trials"])
    assert (t1["status"], t2["status"], batch["status"]) == ("completed", "error", "error")
    assert t2["error"]["plugin"] == "a" and t2["error"]["veto"] is True
    assert len(proj.started(t1["id"])) == 1 and proj.started(t2["id"]) == []
    assert set(counts(proj.events()).values()) == {1}
    assert {(e["run"], e["hook"]) for e in proj.events()} == {
        (batch["id"], "on_run_begin"), (batch["id"], "on_run_end"),
        *((t1["id"], h) for h in HOOKS), *((t2["id"], h) for h in HOOKS),
    }
    (batch_end,) = [e for e in proj.events("on_run_end") if e["is_batch"]]
    assert batch_end["trials"] == [[t1["id"], "completed"], [t2["id"], "error"]]


# --- bad declarations ---------------------------------------------------------------------------

BAD_ENTRIES = {
    "no-module": ({"class": "plugtest_nosuchmod:P"}, "cannot import module 'plugtest_nosuchmod'", True),
    "no-class": ({"class": "recplug:Missing"}, "module 'recplug' has no class 'Missing'", True),
    "not-a-plugin": ({"class": "recplug:NotAPlugin"}, "recplug:NotAPlugin is not a subclass of guildlite.Plugin", True),
    "not-a-class": ({"class": "json:dumps"}, "json:dumps is not a subclass of guildlite.Plugin", True),
    "unknown-arg": ({"class": "recplug:Rec", "args": {"bogus": 1}}, "bad args for Rec", True),
    "missing-arg": ({"class": "recplug:NeedsArg"}, "bad args for NeedsArg", True),
    "rejected-arg": ({"class": "recplug:NeedsArg", "args": {"threshold": -1}},
                     "NeedsArg(...) failed: ValueError: threshold must be >= 0", True),
    "not-a-path": ({"class": "recplug"}, "is not an import path", True),
    "no-entry-point": ({"name": "plugtest-no-such-plugin"}, "no plugin named 'plugtest-no-such-plugin'", True),
    "syntax-error": ({"class": "plugtest_broken:P"}, "importing 'plugtest_broken' failed: SyntaxError", True),
    "import-raises": ({"class": "plugtest_raises:P"}, "importing 'plugtest_raises' failed: RuntimeError: no GPU", True),
    "missing-dependency": ({"class": "plugtest_needsdep:P"}, "No module named 'plugtest_absent_dep'", True),
    "args-not-mapping": ({"class": "recplug:Rec", "args": [1, 2]}, "must be a mapping", False),
    "priority-not-int": ({"class": "recplug:Rec", "priority": "high"}, "'priority' must be an integer", False),
    "class-and-name": ({"class": "recplug:Rec", "name": "x"}, "exactly one of", False),
    "unknown-key": ({"class": "recplug:Rec", "prio": 1}, "unknown key 'prio'", False),
}


def _entry_line(text: str, anchor: str) -> int:
    """The line of the list item after the one holding ``anchor`` (1-based)."""
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if anchor in line)
    return next(n for n in range(i + 1, len(lines)) if lines[n].lstrip().startswith("- ")) + 1


@pytest.mark.parametrize("where", ["global", "op"])
@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_bad_declaration_exits_2_and_stages_nothing(pproj: Callable[..., PluginProject], case: str,
                                                    where: str) -> None:
    entry, needle, exact_line = BAD_ENTRIES[case]
    plugins = [{"class": "recplug:EndOnly"}, entry]  # the bad one is entry [1]
    gf = guildfile_text(global_plugins=plugins) if where == "global" else guildfile_text(
        op_plugins={"quick": plugins})
    proj = pproj(gf)
    (proj.root / "plugtest_broken.py").write_text("from guildlite import Plugin\nclass P(Plugin)\n    pass\n")
    (proj.root / "plugtest_raises.py").write_text("raise RuntimeError('no GPU')\n")
    (proj.root / "plugtest_needsdep.py").write_text("import plugtest_absent_dep\n")
    for args in (["quick"], ["quick", "x=[1,2]"]):  # a single run, and a batch
        cp = proj.run("run", *args, "-y")
        assert cp.returncode == 2, (cp.stdout, cp.stderr)
        lines = [line for line in cp.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("guildlite: error: "), cp.stderr
        at = "plugins[1]" if where == "global" else "operation 'quick' plugins[1]"
        assert at in lines[0] and "guildfile.yml:" in lines[0] and needle in lines[0], lines[0]
        if exact_line:
            assert f"guildfile.yml:{_entry_line(gf, 'recplug:EndOnly')} " in lines[0], lines[0]
        assert TRACEBACK not in cp.stderr
    assert proj.run_dirs() == [] and not (proj.runs_dir.exists() and any(proj.runs_dir.iterdir()))
    assert proj.events() == [] and proj.started() == []


def test_bad_plugin_option_exits_2_and_stages_nothing(pproj: Callable[..., PluginProject]) -> None:
    proj = pproj()
    cp = proj.run("run", "quick", "--plugin", "plugtest-no-such-plugin", "-y")
    assert cp.returncode == 2, (cp.stdout, cp.stderr)
    assert "--plugin plugtest-no-such-plugin" in cp.stderr and TRACEBACK not in cp.stderr
    assert proj.run_dirs() == [] and proj.started() == []


# --- loading imports declared classes only, never execs text ------------------------------------

PAYLOADS = [
    "__import__('os').system('touch PWNED')",
    "os:system('touch PWNED')",
    "recplug:Rec;__import__('os').system('touch PWNED')",
    "exec:compile('open(\"PWNED\",\"w\")','x','exec')",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_code_in_a_class_string_is_never_executed(pproj: Callable[..., PluginProject], payload: str) -> None:
    proj = pproj(guildfile_text(global_plugins=[{"class": payload}]))
    cp = proj.run("run", "quick", "-y")
    assert cp.returncode == 2, (cp.stdout, cp.stderr)
    assert "plugins[0]" in cp.stderr and TRACEBACK not in cp.stderr
    assert not (proj.root / "PWNED").exists()
    assert proj.run_dirs() == []


def test_code_in_a_plugin_option_is_never_executed(pproj: Callable[..., PluginProject]) -> None:
    proj = pproj()
    cp = proj.run("run", "quick", "--plugin", PAYLOADS[0], "-y")
    assert cp.returncode == 2, (cp.stdout, cp.stderr)
    assert not (proj.root / "PWNED").exists() and proj.run_dirs() == []


def test_only_declared_plugin_modules_are_imported(pproj: Callable[..., PluginProject]) -> None:
    """Modules beside the guildfile are not imported unless a plugin entry names them; the
    declared one is imported once, in the guildlite process."""
    proj = pproj(guildfile_text(global_plugins=[rec("a")]))
    sidefx = textwrap.dedent(
        """\
        import os
        open(os.path.join(os.environ["PLUGTEST_MARKERS"], "IMPORTED-" + __name__), "w").close()
        from guildlite import Plugin
        class P(Plugin):
            def on_run_end(self, run):
                pass
        """
    )
    for mod in ("plugins", "guildlite_plugins", "conftest", "undeclared"):
        (proj.root / f"{mod}.py").write_text(sidefx)
    cp = proj.run("run", "quick", "-y")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    assert sorted(p.name for p in proj.markers.glob("IMPORTED-*")) == []
    r = proj.only_record()
    assert proj.imports_path.read_text().split() == ["recplug", str(r["pid"])]
    assert [e["plugin"] for e in proj.events("on_run_end")] == ["a"]


# --- more exit paths and concurrency -----------------------------------------------------------


@pytest.mark.parametrize("hook_name", ["on_run_staged", "on_run_begin"])
def test_sigterm_while_a_hook_runs_before_launch(pproj: Callable[..., PluginProject], hook_name: str) -> None:
    """A stop that arrives during staged/begin hooks interrupts the hook: the job never starts,
    the run is terminated, and the other plugin's on_run_end still fires once. The interrupted
    plugin, still inside its hook, is not called again (one plugin's hooks never overlap)."""
    proj = pproj(guildfile_text(global_plugins=[rec("a", priority=50, dwell={hook_name: 30}), rec("b")]))
    p = proj.spawn("run", "quick", "-y")
    wait_until(lambda: proj.events(hook_name) or p.poll() is not None, timeout=60, what=f"{hook_name} to be called")
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0, (out, err)
    r = proj.only_record()
    assert r["status"] == "terminated" and r["started"] is None
    assert (r["error"]["plugin"], r["error"]["hook"]) == ("a", hook_name)
    assert "interrupted by SIGTERM" in r["error"]["message"]
    assert proj.started() == []
    expected = {"on_run_staged": ["on_run_staged"], "on_run_begin": ["on_run_staged", "on_run_begin"]}[hook_name]
    assert [e["hook"] for e in proj.events(plugin="a")] == expected
    assert [(e["hook"], e["status"]) for e in proj.events(plugin="b", hook="on_run_end")] == [("on_run_end", "terminated")]
    a_end = [t["error"] for t in r["plugins"] if (t["plugin"], t["hook"]) == ("a", "on_run_end")]
    assert len(a_end) == 1 and a_end[0].startswith(f"not called: its {hook_name}")


def test_an_exception_inside_guildlite_still_ends_the_run_once(pproj: Callable[..., PluginProject]) -> None:
    """The last exit path: guildlite itself fails between on_run_begin and the launch (here
    because a plugin left the run's command unusable). The run is recorded as error and every
    on_run_end fires once; nothing was launched."""
    proj = pproj(guildfile_text(global_plugins=[{"class": "breakcmd:BreakCmd"}, rec("a", priority=150)]))
    (proj.root / "breakcmd.py").write_text(
        "from guildlite import Plugin\n\n"
        "class BreakCmd(Plugin):\n"
        "    def on_run_begin(self, run):\n"
        "        run.cmd = []  # a valid record, but no argv: launching it fails inside guildlite\n"
    )
    cp = proj.run("run", "quick", "-y")
    assert cp.returncode != 0
    r = proj.only_record()
    assert r["status"] == "error" and r["error"]["message"].startswith("guildlite failed: IndexError")
    assert [e["hook"] for e in proj.events()] == list(HOOKS)
    assert proj.events("on_run_end")[0]["status"] == "error"
    assert hook_sequence(r["plugins"], "on_run_end") == ["OutputScalars", "a"]
    assert proj.started() == []


@pytest.mark.parametrize(("left", "says"), [
    ("run.cmd = 42", "run.cmd is an integer, expected list"),
    ("run.cmd = ['python', 3]", "run.cmd holds an integer"),
    ("run.attrs['sourcecode'] = 5", "attrs['sourcecode'] has 'sourcecode' that is not an object: restored"),
])
def test_a_hook_that_leaves_what_the_record_schema_refuses_fails_before_launch(
    pproj: Callable[..., PluginProject], left: str, says: str
) -> None:
    """Valid JSON that the store would refuse to write (it checks every record against the schema)
    is the hook's failure, naming the field: restored, the run ends error, never launched, saved."""
    proj = pproj(guildfile_text(global_plugins=[{"class": "breakrec:BreakRecord"}, rec("a", priority=150)]))
    (proj.root / "breakrec.py").write_text(
        f"from guildlite import Plugin\n\nclass BreakRecord(Plugin):\n    def on_run_begin(self, run):\n        {left}\n")
    cp = proj.run("run", "quick", "-y")
    assert cp.returncode == 1 and TRACEBACK not in cp.stderr, cp.stderr
    r = proj.only_record()
    assert r["status"] == "error" and (r["error"]["plugin"], r["error"]["hook"]) == ("BreakRecord", "on_run_begin")
    assert says in r["error"]["message"], r["error"]
    assert proj.started() == [] and proj.events("on_run_end")[0]["status"] == "error"


def test_parallel_trials_never_run_hooks_concurrently(pproj: Callable[..., PluginProject]) -> None:
    """With two trials at a time, hooks still run one at a time, in the guildlite process."""
    dwell = {h: 0.3 for h in HOOKS}
    proj = pproj(guildfile_text(global_plugins=[rec("a", dwell=dwell)]))
    cp = proj.run("run", "quick", "x=[1,2,3]", "sleep=0.5", "--parallel", "2", "-y")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    events = proj.events()
    (batch,) = [r for r in proj.records() if r["is_batch"]]
    assert len(events) == 2 + 3 * 3 and set(counts(events).values()) == {1}
    assert not any(e["overlap"] for e in events)
    assert {e["pid"] for e in events} == {batch["pid"]}


@pytest.mark.parametrize("hook_name", ["on_run_begin", "on_run_end"])
def test_sys_exit_in_a_hook_is_handled_like_any_exception(
    pproj: Callable[..., PluginProject], hook_name: str
) -> None:
    """A plugin (or a library it calls) that calls sys.exit() is one more failing hook: traced,
    reported with plugin and hook, and no other plugin's on_run_end is lost."""
    proj = pproj(guildfile_text(global_plugins=[rec("a", priority=50, exit=[hook_name]), rec("b")]))
    cp = proj.run("run", "quick", "-y")
    r = proj.only_record()
    assert [e["plugin"] for e in proj.events("on_run_end")] == ["a", "b"]
    traced = [(t["plugin"], t["hook"]) for t in r["plugins"] if t["error"]]
    assert traced == [("a", hook_name)]
    assert hook_sequence(r["plugins"], "on_run_end") == ["OutputScalars", "a", "b"]
    if hook_name == "on_run_end":  # the run itself completed: status and exit code stand
        assert r["status"] == "completed" and cp.returncode == 0, (cp.returncode, cp.stderr)
    else:
        assert r["status"] == "error" and r["error"]["plugin"] == "a" and r["error"]["hook"] == hook_name
        assert proj.started() == []


def test_a_failing_plugin_adds_no_scalars(pproj: Callable[..., PluginProject]) -> None:
    """A plugin that fails in on_run_end before OutputScalars (priority < 10) leaves its traceback
    in output.log; the traceback's last line ('KeyError: 5') must not become a scalar."""
    proj = pproj(guildfile_text(global_plugins=[{"class": "recplug:NumericFail", "priority": 5}]))
    cp = proj.run("run", "quick", "x=3", "-y")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    r = proj.only_record()
    run_dir = proj.runs_dir / r["id"]
    assert "KeyError: 5" in (run_dir / "output.log").read_text()  # the traceback is there, as specified
    rows = [json.loads(line) for line in (run_dir / "scalars.jsonl").read_text().splitlines()]
    assert {row["key"] for row in rows} == {"loss"}


# --- project modules never shadow the standard library ------------------------------------------

# A plugin that records, in run.attrs, where it was loaded from and what `import <stdlib>` gives it.
WHEREPLUG = textwrap.dedent(
    """\
    import sys
    from guildlite import Plugin

    class Where(Plugin):
        def on_run_end(self, run):
            import ctypes, trace
            run.attrs["where:" + __name__] = {
                "file": __file__, "name": __name__, "ctypes": ctypes.__file__, "trace": trace.__file__,
                "trace_in_modules": sys.modules["trace"].__file__,
            }
    """
)
QUICK_OP = "operations:\n  quick:\n    main: job.py\n    launcher: python\n"


def _plugin_project(tmp_path: Path, classes: list[str], files: dict[str, str]) -> tuple[Path, Path]:
    from conftest import write_project

    gf = "plugins:\n" + "".join(f"  - {c}\n" for c in classes) + QUICK_OP
    root = write_project(tmp_path / "proj", gf, {"job.py": "print('job ran')\n", **files})
    return root, tmp_path / "runs"


def _attrs_of_the_run(root: Path, runs: Path) -> dict[str, Any]:
    from conftest import clean_env, load_records, run_guildlite

    cp = run_guildlite("run", "quick", "-y", cwd=root, env=clean_env(runs))
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    assert TRACEBACK not in cp.stderr
    (record,) = load_records(runs)
    assert record["status"] == "completed", record
    return {k[len("where:"):]: v for k, v in record["attrs"].items() if k.startswith("where:")}


def test_a_project_file_named_like_a_stdlib_module_is_not_imported_for_it(tmp_path: Path) -> None:
    # ctypes.py and trace.py beside the guildfile: neither guildlite nor the plugin gets them for `import ctypes`.
    broken = "raise SystemExit('the project ctypes.py was imported in place of the stdlib one')\n"
    root, runs = _plugin_project(tmp_path, ["whereplug:Where"],
                                 {"whereplug.py": WHEREPLUG, "ctypes.py": broken, "trace.py": broken})
    seen = _attrs_of_the_run(root, runs)["whereplug"]
    assert Path(seen["file"]) == root / "whereplug.py" and seen["name"] == "whereplug"
    assert not Path(seen["ctypes"]).is_relative_to(root) and not Path(seen["trace"]).is_relative_to(root)


def test_a_declared_module_named_like_a_stdlib_one_loads_from_the_project(tmp_path: Path) -> None:
    # `trace:Where` is the project's trace.py, by its file; stdlib `trace` stays what everyone else imports.
    root, runs = _plugin_project(tmp_path, ["trace:Where"], {"trace.py": WHEREPLUG})
    (seen,) = _attrs_of_the_run(root, runs).values()
    assert Path(seen["file"]) == root / "trace.py"
    assert not Path(seen["trace"]).is_relative_to(root) and not Path(seen["trace_in_modules"]).is_relative_to(root)


PKG_CORE = WHEREPLUG.replace("import sys\n", "import sys\nfrom . import helpers\nimport sibling\n").replace(
    '"file": __file__,', '"file": __file__, "helpers": helpers.VALUE, "sibling": sibling.VALUE,')


@pytest.mark.parametrize("package", ["myplugins", "calendar"])
def test_a_plugin_package_keeps_its_relative_and_project_imports(tmp_path: Path, package: str) -> None:
    # `calendar` is a stdlib name: the project package loads under a private name, yet its
    # relative import and its import of a project-only top-level module work all the same.
    files = {f"{package}/__init__.py": "", f"{package}/helpers.py": "VALUE = 42\n",
             f"{package}/core.py": PKG_CORE, "sibling.py": "VALUE = 'sib'\n"}
    if package == "myplugins":
        files[f"{package}/core.py"] = PKG_CORE.replace("from . import helpers", "import myplugins.helpers as helpers")
    root, runs = _plugin_project(tmp_path, [f"{package}.core:Where"], files)
    (seen,) = _attrs_of_the_run(root, runs).values()
    assert Path(seen["file"]) == root / package / "core.py"
    assert seen["helpers"] == 42 and seen["sibling"] == "sib"


def test_a_namespace_package_in_the_project_loads(tmp_path: Path) -> None:
    root, runs = _plugin_project(tmp_path, ["nsplugins.where:Where", "json.where:Where"],
                                 {"nsplugins/where.py": WHEREPLUG, "json/where.py": WHEREPLUG})
    seen = list(_attrs_of_the_run(root, runs).values())
    assert sorted(Path(s["file"]) for s in seen) == [root / "json" / "where.py", root / "nsplugins" / "where.py"]


def test_the_slurm_supervisor_starts_with_the_stdlib_before_the_staged_project(tmp_path: Path) -> None:
    # On the node the supervisor runs in the run dir, beside the staged project: its json.py must
    # not be what `import json` gives the supervisor (nor the plugins it runs).
    import subprocess

    from conftest import clean_env

    from guildlite.backends.slurm.options import sbatch_script

    run_dir = tmp_path / "20260101T000000-abcdef"
    run_dir.mkdir()
    (run_dir / "json.py").write_text("raise SystemExit('the staged json.py shadowed the stdlib')\n")
    script = run_dir / "job.sbatch"
    script.write_text(sbatch_script(run_dir, "job", {}, sys.executable))
    cp = subprocess.run(["bash", str(script)], cwd=run_dir, env=clean_env(), capture_output=True, text=True,
                        timeout=60)
    assert "shadowed" not in cp.stdout + cp.stderr
    assert "slurm.json" in cp.stderr  # it got as far as reading its spec (this run dir has none)


def test_torchrun_itself_never_imports_the_staged_project_in_place_of_the_stdlib(tmp_path: Path) -> None:
    # Plain `torchrun train.py` runs beside a logging.py; under guildlite torchrun (the agent) runs
    # in the run dir, where the staged copy must not replace the stdlib logging torch imports.
    from conftest import clean_env, load_records, run_guildlite, write_project

    broken = "raise SystemExit('the staged logging.py shadowed the stdlib')\n"
    root = write_project(tmp_path / "proj", "operations:\n  t:\n    main: job.py\n",
                         {"job.py": "print('rank ran')\n", "logging.py": broken, "dataclasses.py": broken})
    cp = run_guildlite("run", "t", "-y", cwd=root, env=clean_env(tmp_path / "runs"))
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    assert "rank ran" in cp.stdout and "shadowed" not in cp.stdout + cp.stderr
    assert load_records(tmp_path / "runs")[0]["status"] == "completed"
