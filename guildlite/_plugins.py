"""The plugin API: base class, per-method priority, loading declared plugins, ordered dispatch."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.machinery
import importlib.util
import sys
import time
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar

from ._errors import GuildfileError
from ._hookcall import HookCall, read_only_fields, record_fields, restore_read_only, restore_unsaveable, text

if TYPE_CHECKING:
    from ._guildfile import PluginSpec
    from ._run import Run

HOOKS = ("on_run_staged", "on_run_begin", "on_run_end")
DEFAULT_PRIORITY = 100
ENTRY_POINT_GROUP = "guildlite.plugins"

F = TypeVar("F", bound=Callable[..., Any])


class StopRun(Exception):
    """Raise from ``on_run_staged`` or ``on_run_begin`` to veto the run with a reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def hook(priority: int) -> Callable[[F], F]:
    """Set the priority of one hook method (lower runs first), overriding the class's ``priority``."""

    def mark(fn: F) -> F:
        fn._guildlite_priority = priority  # type: ignore[attr-defined]
        return fn

    return mark


class Plugin:
    """Base class for plugins: override any of the three hooks; each receives the ``Run``.

    ``priority`` orders plugins (lower first, default 100); ``@hook(priority=N)`` sets it for one
    method. Hooks run in the guildlite process, once per run, never once per rank.
    """

    priority: int = DEFAULT_PRIORITY

    @property
    def name(self) -> str:
        """The name used in traces and as the key for ``run.attrs``."""
        return type(self).__name__

    def on_run_staged(self, run: Run) -> None:
        """After the run dir is populated (source copied, run.json written), before launch."""

    def on_run_begin(self, run: Run) -> None:
        """Just before the job starts; raise StopRun to veto."""

    def on_run_end(self, run: Run) -> None:
        """After the job ends, on every exit path, with ``status`` and ``exit_code`` set."""


def hook_priority(plugin: Plugin, hook_name: str) -> int:
    """The priority of ``plugin``'s ``hook_name``: the guildfile's, else the method's, else the class's."""
    declared = getattr(plugin, "_guildlite_declared_priority", None)
    if declared is not None:
        return int(declared)
    method = getattr(type(plugin), hook_name)
    return int(getattr(method, "_guildlite_priority", plugin.priority))


def implements(plugin: Plugin, hook_name: str) -> bool:
    """Whether the plugin overrides ``hook_name`` (no-op hooks are neither called nor traced)."""
    return getattr(type(plugin), hook_name) is not getattr(Plugin, hook_name)


# --- loading -------------------------------------------------------------------------------------


def load_plugins(specs: Iterable[PluginSpec], project_dir: Path) -> list[Plugin]:
    """Import and instantiate declared plugins; any problem is a GuildfileError naming the entry."""
    out = []
    for spec in specs:
        if spec.cls:
            cls = _import_class(spec.cls, spec.where, project_dir)
        else:
            cls = _entry_point_class(str(spec.name), spec.where)
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise GuildfileError(f"{spec.where}: {spec.cls or spec.name} is not a subclass of guildlite.Plugin")
        try:
            plugin = cls(**dict(spec.args))
        except TypeError as e:
            raise GuildfileError(f"{spec.where}: bad args for {cls.__name__}: {e}") from None
        except Exception as e:  # the plugin's own constructor rejected its args
            raise GuildfileError(f"{spec.where}: {cls.__name__}(...) failed: {type(e).__name__}: {e}") from None
        if spec.priority is not None:
            plugin._guildlite_declared_priority = spec.priority  # type: ignore[attr-defined]
        if spec.hook_timeout is not None:
            plugin._guildlite_hook_timeout = spec.hook_timeout  # type: ignore[attr-defined]
        out.append(plugin)
    return out


def _import_class(path: str, where: str, project_dir: Path) -> Any:
    mod_name, sep, attr = path.partition(":")
    if not sep:
        mod_name, _, attr = path.rpartition(".")
    if not mod_name or not attr or not all(p.isidentifier() for p in (*mod_name.split("."), *attr.split("."))):
        raise GuildfileError(f"{where}: class {path!r} is not an import path like 'module:Class'")
    try:
        module = _import_module(mod_name, project_dir)
    except ModuleNotFoundError as e:
        raise GuildfileError(f"{where}: cannot import module '{mod_name}': {e}") from None
    except Exception as e:
        raise GuildfileError(f"{where}: importing '{mod_name}' failed: {type(e).__name__}: {e}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise GuildfileError(f"{where}: module '{mod_name}' has no class '{attr}'")
        obj = getattr(obj, part)
    return obj


def _import_module(mod_name: str, project_dir: Path) -> ModuleType:
    """Import ``mod_name`` from the project dir if it is there, else as installed.

    The project dir joins ``sys.path`` at the end, never the front: a project file named like a
    stdlib module (``ctypes.py``, ``trace.py``) must not replace that module for guildlite and
    every later import. The declared module itself still comes from the project, found by its
    file; its top-level package is registered under its own name unless that name belongs to
    another module (stdlib, installed, already imported), and then under a private one, so its
    relative imports and its own absolute imports of project-only modules keep working.
    """
    root = str(project_dir)
    if root not in sys.path:
        sys.path.append(root)
    top, _, sub = mod_name.partition(".")
    spec = importlib.machinery.PathFinder.find_spec(top, [root])
    if spec is None:
        return importlib.import_module(mod_name)
    # The private name is per project dir: two projects' trace.py must not share one module.
    tag = hashlib.sha256(root.encode()).hexdigest()[:8]
    name = top if _free_name(top, project_dir) else f"_guildlite_project_{tag}_{top}"
    if name not in sys.modules:
        spec = _renamed(spec, name)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException:
            del sys.modules[name]
            raise
    return importlib.import_module(f"{name}.{sub}" if sub else name)


def _free_name(top: str, project_dir: Path) -> bool:
    """Whether ``top`` names no module but the project's: not stdlib, installed, or imported."""
    if top in getattr(sys, "stdlib_module_names", ()) or top in sys.builtin_module_names:
        return False
    loaded = sys.modules.get(top)
    if loaded is not None:
        return _from_project(loaded, project_dir)
    elsewhere = [p for p in sys.path if Path(p or ".").resolve() != project_dir.resolve()]
    return importlib.machinery.PathFinder.find_spec(top, elsewhere) is None


def _from_project(module: ModuleType, project_dir: Path) -> bool:
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), None)
    return where is not None and Path(where).resolve().is_relative_to(project_dir.resolve())


def _renamed(spec: ModuleSpec, name: str) -> ModuleSpec:
    """``spec`` (a module or package found in the project) as module ``name``."""
    if spec.name == name:
        return spec
    # A plain list: a namespace package's own path object would look itself up again by its old name.
    where = None if spec.submodule_search_locations is None else list(spec.submodule_search_locations)
    if spec.origin is None:  # a namespace package: a directory without __init__.py
        ns = importlib.machinery.ModuleSpec(name, spec.loader, is_package=True)
        ns.submodule_search_locations = where
        return ns
    renamed = importlib.util.spec_from_file_location(name, spec.origin, submodule_search_locations=where)
    assert renamed is not None  # a file the path finder just found
    return renamed


def _entry_point_class(name: str, where: str) -> Any:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in eps:
        avail = ", ".join(sorted(eps)) or "none installed"
        raise GuildfileError(f"{where}: no plugin named '{name}' in entry-point group {ENTRY_POINT_GROUP} ({avail})")
    try:
        return eps[name].load()
    except Exception as e:
        raise GuildfileError(f"{where}: loading plugin '{name}' failed: {type(e).__name__}: {e}") from None


# --- dispatch ------------------------------------------------------------------------------------

DEFAULT_HOOK_TIMEOUT = 300.0  # seconds a hook call may take (guildfile ``hook-timeout``)
STOPPED_END_SECONDS = 30.0  # after a stop, the most an on_run_end call may take
_POLL = 0.05  # how often the waiting main thread looks at the hook, the clock and stop requests
# How long after giving up on a hook its plugin's next hook waits for it to return: a timed-out
# one a moment (a pure-Python loop unwinds); one a stop interrupted a little longer, so that a
# merely slow hook (a network call) still gets its plugin's on_run_end.
_UNWIND = 0.25
STOP_GRACE = 3.0


class HookFailed(Exception):
    """A staged/begin hook vetoed, raised, timed out or was interrupted: the run must not launch.

    ``status`` is the run's: ``error``, or ``terminated`` when a stop interrupted the hook.
    """

    def __init__(self, plugin: str, hook_name: str, message: str, veto: bool, status: str = "error") -> None:
        super().__init__(message)
        self.info = {"plugin": plugin, "hook": hook_name, "message": message, "veto": veto}
        self.status = status


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """How one hook call went: ``error`` (None: fine), a veto, interrupted by a stop, and whether
    the error is guildlite's wording (a timeout, a stop) rather than the plugin's."""

    error: str | None
    veto: bool = False
    stopped: bool = False
    ours: bool = False


def hook_timeout(plugin: Plugin, default: float) -> float:
    """The seconds one call of ``plugin``'s hooks may take: its guildfile entry's, else ``default``."""
    declared = getattr(plugin, "_guildlite_hook_timeout", None)
    return float(declared) if declared is not None else default


class Dispatcher:
    """Calls one hook on every plugin in order and traces each call into ``run.plugins``.

    Order, the same for every hook: ascending priority, ties in declaration order (built-ins,
    then global plugins, then op plugins, then entry-point plugins).

    Each call runs in its own daemon thread while the main thread waits in short slices, so a
    hook is bounded by its timeout and a stop (``interrupt``, from a signal handler in the main
    thread, or the run's stop request) takes effect while a hook hangs. Calls still run one at a
    time; the one exception is a hook given up on: its thread may go on in the background, and
    that plugin is not called again while it does (one plugin's hooks never overlap).
    """

    def __init__(
        self, plugins: Sequence[Plugin], log: Callable[[str], None] | None = None,
        timeout: float = DEFAULT_HOOK_TIMEOUT,
    ) -> None:
        self.plugins = list(plugins)
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self.timeout = timeout
        self._stops: list[tuple[float, str]] = []  # (monotonic time, what) of every interrupt
        self._hung: dict[int, HookCall] = {}  # id(plugin) -> its abandoned call

    def interrupt(self, why: str) -> None:
        """A stop (``why``: the signal's name), safe to call from a signal handler.

        A staged/begin hook running now or later is given up on at once. An on_run_end call gets at
        most STOPPED_END_SECONDS from the first stop (or from its start, after it); a further stop
        gives up on the one running.
        """
        self._stops.append((time.monotonic(), why))

    def ordered(self, hook_name: str) -> list[Plugin]:
        chosen = [(hook_priority(p, hook_name), i, p) for i, p in enumerate(self.plugins) if implements(p, hook_name)]
        return [p for _, _, p in sorted(chosen, key=lambda t: (t[0], t[1]))]

    def call(self, hook_name: str, run: Run) -> None:
        """Run ``hook_name`` for every plugin.

        In staged/begin the first veto, exception, timeout or stop ends the chain and raises
        HookFailed. In ``on_run_end`` every plugin runs; failures are traced and reported, never raised.
        """
        for plugin in self.ordered(hook_name):
            started = time.time()
            t0 = time.perf_counter()
            out = self._call(plugin, hook_name, run)
            run.plugins.append(
                {
                    "plugin": plugin.name,
                    "hook": hook_name,
                    "priority": hook_priority(plugin, hook_name),
                    "start": started,
                    "seconds": round(time.perf_counter() - t0, 6),
                    "error": out.error,
                }
            )
            if out.error is None:
                continue
            what = "vetoed the run" if out.veto else "failed"
            self._log(f"guildlite: plugin {plugin.name}.{hook_name} {what}: {out.error}")
            if hook_name != "on_run_end":
                # The plugin's own words as they are; guildlite's say which plugin and hook.
                msg = f"plugin {plugin.name} {hook_name} {out.error}" if out.ours else out.error
                raise HookFailed(plugin.name, hook_name, msg, out.veto, "terminated" if out.stopped else "error")

    def _call(self, plugin: Plugin, hook_name: str, run: Run) -> _Outcome:
        hung = self._hung.get(id(plugin))
        if hung is not None and not self._returned(hung):
            return _Outcome(f"not called: its {hung.hook} of run {hung.run_id} {hung.abandoned} and has not returned", ours=True)
        self._hung.pop(id(plugin), None)
        if hook_name != "on_run_end" and (why := self._stop_reason(run)):
            return _Outcome(f"not called: stopped by {why}", stopped=True, ours=True)
        before, fixed = record_fields(run), read_only_fields(run)
        call = HookCall(plugin, hook_name, run)
        call.start()
        try:
            gave_up = self._wait(call, hook_name, run)
        except BaseException:  # a KeyboardInterrupt where the caller installed no handler
            self._hung[id(plugin)] = call
            call.abandon("was interrupted", _UNWIND)
            raise
        if gave_up is not None:
            self._hung[id(plugin)] = call
            restore_read_only(run, fixed)  # what it changed so far (its thread may go on: see README)
            stack = call.abandon(gave_up.error or "", STOP_GRACE if gave_up.stopped else _UNWIND)
            _append_log(run, f"guildlite: plugin {plugin.name}.{hook_name} {gave_up.error}; it was at:\n{stack}")
            return gave_up
        changed = restore_read_only(run, fixed)
        bad = restore_unsaveable(run, before)
        if changed:  # said in output.log too: a veto or an exception below is what run.plugins shows
            _append_log(run, f"guildlite: plugin {plugin.name}.{hook_name} {_read_only_message(changed)}")
        if isinstance(call.error, StopRun):
            return _Outcome(text(call.error.reason), veto=True)
        if call.error is not None:  # a plugin's sys.exit() is its failure, not guildlite's exit
            _append_log(run, f"guildlite: plugin {plugin.name}.{hook_name} raised:\n{call.traceback}")
            return _Outcome(f"{type(call.error).__name__}: {text(call.error)}")
        problems = ([_read_only_message(changed)] if changed else []) + (["left " + "; ".join(bad)] if bad else [])
        return _Outcome("; ".join(problems), ours=True) if problems else _Outcome(None)

    def _returned(self, hung: HookCall) -> bool:
        """Whether a plugin's abandoned call has returned, waiting for it until ``_UNWIND`` (timed
        out) or ``STOP_GRACE`` (interrupted) after it was given up on. A further stop does not cut
        this short: a plugin whose hook returns in time gets its on_run_end, even after 2x Ctrl-C."""
        while not hung.done.is_set():
            if time.monotonic() >= hung.grace_until:
                return False
            hung.done.wait(_POLL)
        return True

    def _stop_reason(self, run: Run) -> str | None:
        if self._stops:
            return self._stops[-1][1]
        return "guildlite stop" if run.paths.stop_request.exists() else None

    def _wait(self, call: HookCall, hook_name: str, run: Run) -> _Outcome | None:
        """Wait for ``call``: None when it returned, else why we gave up on it."""
        limit = hook_timeout(call.plugin, self.timeout)
        start = time.monotonic()
        deadline, late = start + limit, _Outcome(f"timed out after {limit:g} s", ours=True)
        seen = len(self._stops)
        ending = hook_name == "on_run_end"
        if ending and seen and STOPPED_END_SECONDS < limit:
            deadline, late = start + STOPPED_END_SECONDS, _Outcome(
                f"timed out after {STOPPED_END_SECONDS:g} s (the bound after a stop)", ours=True)
        # The wait is cut into short slices: a signal's handler runs during one (it only records
        # the stop), and each slice looks at the stops, the stop request and the clock.
        while not call.done.wait(_POLL):
            if not ending and (why := self._stop_reason(run)):
                return _Outcome(f"interrupted by {why}", stopped=True, ours=True)
            if ending and len(self._stops) > seen:
                if len(self._stops) > 1:  # a second stop: the user insists
                    return _Outcome(f"interrupted by {self._stops[-1][1]}", stopped=True, ours=True)
                first, why = self._stops[0]
                if first + STOPPED_END_SECONDS < deadline:
                    deadline = first + STOPPED_END_SECONDS
                    late = _Outcome(f"did not end within {STOPPED_END_SECONDS:g} s of {why}", stopped=True, ours=True)
            if time.monotonic() >= deadline:
                return late
        return None


def _read_only_message(fields: list[str]) -> str:
    names = ", ".join(f"run.{f}" for f in fields)
    return f"changed {names} (read-only for plugins): restored"


def _append_log(run: Run, text: str) -> None:
    # Every line prefixed: a traceback's last line (`KeyError: 5`) must not read as a scalar.
    try:
        with open(run.paths.output_log, "a", encoding="utf-8") as f:
            f.writelines(f"[guildlite] {line}\n" for line in text.rstrip("\n").splitlines())
    except OSError:
        pass
