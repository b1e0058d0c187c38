"""The plugin API: base class, per-method priority, loading declared plugins, ordered dispatch."""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import sys
import time
import traceback
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar

from ._errors import GuildfileError

if TYPE_CHECKING:
    from ._guildfile import PluginSpec
    from ._runs import Run

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


class HookFailed(Exception):
    """A staged/begin hook vetoed or raised: the run must not launch."""

    def __init__(self, plugin: str, hook_name: str, message: str, veto: bool) -> None:
        super().__init__(message)
        self.info = {"plugin": plugin, "hook": hook_name, "message": message, "veto": veto}


class Dispatcher:
    """Calls one hook on every plugin in order and traces each call into ``run.plugins``.

    Order, the same for every hook: ascending priority, ties in declaration order (built-ins,
    then global plugins, then op plugins, then entry-point plugins).
    """

    def __init__(self, plugins: Sequence[Plugin], log: Callable[[str], None] | None = None) -> None:
        self.plugins = list(plugins)
        self._log = log or (lambda msg: print(msg, file=sys.stderr))

    def ordered(self, hook_name: str) -> list[Plugin]:
        chosen = [(hook_priority(p, hook_name), i, p) for i, p in enumerate(self.plugins) if implements(p, hook_name)]
        return [p for _, _, p in sorted(chosen, key=lambda t: (t[0], t[1]))]

    def call(self, hook_name: str, run: Run) -> None:
        """Run ``hook_name`` for every plugin.

        In staged/begin the first veto or exception stops the chain and raises HookFailed. In
        ``on_run_end`` every plugin runs; failures are traced and reported, never raised.
        """
        for plugin in self.ordered(hook_name):
            started = time.time()
            t0 = time.perf_counter()
            err: str | None = None
            veto = False
            try:
                getattr(plugin, hook_name)(run)
            except StopRun as e:
                err, veto = e.reason, True
            except (Exception, SystemExit) as e:  # a plugin's sys.exit() is its failure, not guildlite's exit
                err = f"{type(e).__name__}: {e}"
                _append_log(run, f"guildlite: plugin {plugin.name}.{hook_name} raised:\n{traceback.format_exc()}")
            run.plugins.append(
                {
                    "plugin": plugin.name,
                    "hook": hook_name,
                    "priority": hook_priority(plugin, hook_name),
                    "start": started,
                    "seconds": round(time.perf_counter() - t0, 6),
                    "error": err,
                }
            )
            if err is None:
                continue
            what = "vetoed the run" if veto else "failed"
            self._log(f"guildlite: plugin {plugin.name}.{hook_name} {what}: {err}")
            if hook_name != "on_run_end":
                raise HookFailed(plugin.name, hook_name, err, veto)


def _append_log(run: Run, text: str) -> None:
    # Every line prefixed: a traceback's last line (`KeyError: 5`) must not read as a scalar.
    try:
        with open(run.paths.output_log, "a", encoding="utf-8") as f:
            f.writelines(f"[guildlite] {line}\n" for line in text.rstrip("\n").splitlines())
    except OSError:
        pass
